"""The dYdX chain's health as the watchdog samples it: node head and bridge state over gRPC,
indexer height over REST (one attempt per sample), and the indexer feed's subscriptions."""

from __future__ import annotations

from bot.config import Settings
from bot.venues.dydx.adapter import DydxVenue
from bot.venues.dydx.chain import ChainQueries
from bot.venues.dydx.indexer_rest import IndexerRest
from bot.venues.leg import Leg
from bot.venues.ports import HealthProbes


def health_probes(settings: Settings, leg: Leg) -> HealthProbes:
    """Probes for the leg's dYdX venue; their own connections close with the leg."""
    venue = leg.venue
    if not isinstance(venue, DydxVenue):
        return HealthProbes()
    w = settings.watchdog
    endpoints = {**settings.dydx.endpoints(settings.network), **leg.status.get("sim", {})}
    chain = None
    if venue.gateway is not None:
        chain = venue.gateway.chain_queries(w.probe_timeout_secs)
    elif w.node_queries and endpoints.get("node_grpc"):
        own = ChainQueries.connect(str(endpoints["node_grpc"]), secure=settings.network != "sim",
                                   timeout_secs=w.probe_timeout_secs)
        chain = own

        async def close_chain() -> None:
            own.close()

        leg.closers.append(close_chain)
    indexer = None
    if endpoints.get("indexer_rest"):
        # One attempt per sample: a failure is a data point for the error rate, not a retry loop.
        indexer = IndexerRest(str(endpoints["indexer_rest"]), timeout_secs=w.probe_timeout_secs,
                              max_attempts=1)
        leg.closers.append(indexer.aclose)
    return HealthProbes(chain=chain, indexer=indexer, feed=lambda: venue.feed,
                        perpetual_ids=tuple(p.clob_pair_id for p in venue.params.values()))
