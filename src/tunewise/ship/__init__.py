"""A winner leaving tunewise: the bundle (`ship.bundle`), written by `ship.export` with its model card
(`ship.card`), read by `ship.predict` (a file's answers) and `ship.serve` (an OpenAI-compatible server)."""
