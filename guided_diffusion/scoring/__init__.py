"""
Scoring a model or its samples.

    bpd          bits per dimension over real images (the variational bound)
    judge        agreement of labelled samples with a clean classifier
    pixel_judge  an independent judge: k-nearest neighbours on grey pixels
"""
