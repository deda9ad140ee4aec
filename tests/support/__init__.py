"""Test support: the test PKIs, process helpers (serve sites, redis-server, SoftHSM2 tokens), store
seeding and the stock-client helpers shared by the suite and by `bench/`. Not tests themselves."""
