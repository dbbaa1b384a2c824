"""Automated characterization of a microwave-to-optical transducer.

Each step is a sequence that also runs alone; `TransducerCharacterization` composes them.
"""
