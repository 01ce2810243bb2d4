"""The local engine: runs a compiled definition JSON on this machine, without Docker or AWS."""
