"""
From flags to objects.

    defaults    the defaults dicts (one per factory), NUM_CLASSES, channel-multiplier tables
    flags       defaults dicts -> argparse flags -> range-checked values
    flag_help   --help texts of the network, diffusion and training flags
    factory     create_model / create_classifier / sr_create_model / create_gaussian_diffusion
                and the *_and_diffusion factories that take exactly their defaults' keys
    checkpoint  strict checkpoint loading; on a mismatch, an error naming the flags to change
    run_record  the flags recorded beside a checkpoint (args.json, samples_*.json)
"""
