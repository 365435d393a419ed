"""gossiplab: decentralized SGD with multiple gossip steps, simulated fast and measured honestly."""

__version__ = "0.1.0"
