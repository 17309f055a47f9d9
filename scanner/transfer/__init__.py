"""Transfer feasibility (can the asset move from the buy venue to the sell venue?) and asset identity."""
