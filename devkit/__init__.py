"""The development kit: synthetic data, sample files, simulated annotators, the demo driver.

It sits above ``labeling`` and ``training`` and may import both; they never import it (a test keeps
it so). ``python -m devkit synth|samples|demo``.
"""
