"""Protocol-faithful local venue simulators (OKX, Binance) driven by one seeded market walk."""
