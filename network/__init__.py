"""The ZeroMQ control plane: heralds, node agents, link layer, clock sync.

Empty so far: it arrives with the heralded-entanglement issue. See ARCHITECTURE.md.
"""
