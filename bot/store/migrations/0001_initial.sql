-- Decimal values are TEXT (str(Decimal), exact); times are INTEGER ns since the epoch.

CREATE TABLE orders (
    client_id    INTEGER PRIMARY KEY,
    venue        TEXT    NOT NULL,
    market       TEXT    NOT NULL,
    side         TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    size         TEXT    NOT NULL,
    price        TEXT    NOT NULL,
    tif          TEXT    NOT NULL,
    reduce_only  INTEGER NOT NULL CHECK (reduce_only IN (0, 1)),
    status       TEXT    NOT NULL,
    filled_size  TEXT    NOT NULL,
    created_ns   INTEGER NOT NULL,
    updated_ns   INTEGER NOT NULL,
    reason       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX orders_venue_status ON orders (venue, status);

CREATE TABLE fills (
    id           INTEGER PRIMARY KEY,
    venue        TEXT    NOT NULL,
    fill_id      TEXT    NOT NULL,
    client_id    INTEGER NOT NULL,
    market       TEXT    NOT NULL,
    side         TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    price        TEXT    NOT NULL,
    size         TEXT    NOT NULL,
    fee          TEXT    NOT NULL,
    liquidity    TEXT    NOT NULL,
    ts_event     INTEGER NOT NULL,
    UNIQUE (venue, fill_id)
);
CREATE INDEX fills_market_ts ON fills (market, ts_event);

CREATE TABLE funding_payments (
    id            INTEGER PRIMARY KEY,
    venue         TEXT    NOT NULL,
    market        TEXT    NOT NULL,
    rate          TEXT    NOT NULL,
    position_size TEXT    NOT NULL,
    oracle_price  TEXT    NOT NULL,
    amount        TEXT    NOT NULL,
    ts_event      INTEGER NOT NULL,
    UNIQUE (venue, market, ts_event)
);
CREATE INDEX funding_market_ts ON funding_payments (market, ts_event);

CREATE TABLE decisions (
    id      INTEGER PRIMARY KEY,
    ts_ns   INTEGER NOT NULL,
    market  TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    flags   TEXT    NOT NULL,
    plan    TEXT    NOT NULL
);
CREATE INDEX decisions_market_ts ON decisions (market, ts_ns, id);

CREATE TABLE risk_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    risk_mode   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    updated_ns  INTEGER NOT NULL
);
INSERT INTO risk_state (id, risk_mode, reason, updated_ns) VALUES (1, 'NORMAL', '', 0);

CREATE TABLE kill_latch (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    latched     INTEGER NOT NULL CHECK (latched IN (0, 1)),
    reason      TEXT    NOT NULL,
    latched_ns  INTEGER NOT NULL
);
INSERT INTO kill_latch (id, latched, reason, latched_ns) VALUES (1, 0, '', 0);

CREATE TABLE id_allocator (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    next_client_id  INTEGER NOT NULL CHECK (next_client_id >= 1)
);
INSERT INTO id_allocator (id, next_client_id) VALUES (1, 1);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
