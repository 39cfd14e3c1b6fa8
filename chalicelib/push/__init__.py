"""Push: campaigns, rendering, the delivery pipeline and the SNS gateway."""
