"""
Training data.

    image_folder  image folders (the original's rules) as an endless, exactly resumable loader
    digits        the embedded 8x8 handwritten digits, materialised as an image folder
    pixels        uint8 [0, 255] <-> float [-1, 1] conversion, NCHW <-> NHWC
    batch_map     a batch iterator wrapper that keeps the data position (super-res, label dropout)
"""
