"""Pure decisions: from spec + observed state + clock to desired objects and conditions.

Nothing here performs I/O or imports the kubernetes client; the controller gathers what is
observed and applies what is planned.
"""
