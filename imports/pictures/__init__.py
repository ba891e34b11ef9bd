"""Pictures: fetched, checked, rendered and stored (cars.pictures), retried."""
