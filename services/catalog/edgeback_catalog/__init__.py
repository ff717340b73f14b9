"""The catalog service: the only client of MongoDB, answering RPCs for every read and write."""
