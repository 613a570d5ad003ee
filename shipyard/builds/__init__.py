"""Build domain: request rules, status machine, ids and errors. No I/O here."""
