"""The HTTP API service: REST ``/api/v1`` for operators; publishes commands, asks the catalog."""
