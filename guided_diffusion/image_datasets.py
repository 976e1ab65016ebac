"""
Image-folder loading (the original's module path). Implementation: `guided_diffusion.data.image_folder`.
"""

from .data.image_folder import (  # noqa: F401
    center_crop_arr,
    classes_from_file_names,
    IMAGE_EXTENSIONS,
    ImageDataset,
    list_image_files_recursively,
    load_data,
    random_crop_arr,
    ResumableLoader,
    SuperResData,
    _downscale_box_while_large,
    _ignore_stop_signals,
    _list_image_files_recursively,
    _open_rgb,
    _SeededItems,
)
