"""Protocol front-ends of the simulator: dYdX indexer REST/WS, node gRPC, Binance spot, admin."""
