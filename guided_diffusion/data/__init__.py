"""
Training data.

    image_folder  image folders (the original's rules) as an endless, exactly resumable loader
    digits        the embedded 8x8 handwritten digits, materialised as an image folder
"""
