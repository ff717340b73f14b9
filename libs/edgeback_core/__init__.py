"""Shared foundation of every edgeback service: errors, settings, logging, lifecycle, bus."""
