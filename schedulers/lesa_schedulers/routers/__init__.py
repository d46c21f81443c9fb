"""Stage routers: flow time t to the stage whose expert forecasts it."""
