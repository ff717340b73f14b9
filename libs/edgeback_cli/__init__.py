"""The ``edgeback`` command line: one-disk backup, restore and verify without the services."""
