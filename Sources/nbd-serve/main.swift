print("nbd-serve: not yet implemented")
