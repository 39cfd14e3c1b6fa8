"""HTTP layer: one Blueprint per area. Parse → call a service → format."""
