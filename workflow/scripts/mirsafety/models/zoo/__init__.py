"""The model zoo: tiny models trained on CPU to behave as resources/zoo.yaml plants (a method
check with known answers, not a finding about real models).

``spec`` reads and checks the spec, ``behaviour`` draws what each model is trained to answer (the
ground truth), ``examples`` and ``train`` turn that into weights.
"""
