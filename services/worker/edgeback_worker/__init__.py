"""The worker service: runs backups and restores for the backup host it runs on."""
