"""Channel adapters, one module per protocol; `channels.base` is the contract and the registry."""
