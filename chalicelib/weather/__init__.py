"""Weather: NWS alerts (parse, lifecycle, area), the device region index
queries behind "who is inside the storm", the feed poller and conditions."""
