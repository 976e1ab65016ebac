"""
`make demo`: classifier and classifier-free guidance on the embedded digits, end to end, with
the real scripts (`recipe` what, `stages` how a script runs, `pipeline` the order, `report` the
table). Needs a checkout: it runs the scripts in scripts/ and evaluations/.
"""
