"""Getting bytes safely: CSV sources and the images they name (SPEC §4)."""
