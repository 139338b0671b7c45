"""dYdX v4 venue: indexer WS/REST feeds, node orders via dydx-v4-client, and their wire formats."""
