"""Pictures: fetched, checked, rendered (cars.renditions), stored (cars.pictures), retried."""
