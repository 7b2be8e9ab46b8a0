"""What a domain is and what runs inside it: the in-domain agent and the standard domains."""
