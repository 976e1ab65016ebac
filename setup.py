from setuptools import find_packages, setup

setup(
    name="guided-diffusion",
    version="0.1.0",
    description="Classifier-guided diffusion (Dhariwal & Nichol 2021), drop-in compatible re-implementation",
    packages=find_packages(include=["guided_diffusion", "guided_diffusion.*", "evaluations", "evaluations.*"]),
    package_data={"guided_diffusion": ["data/*.npz"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "numpy",
        "mpi4py",
        "blobfile",
        "scipy",
        "pillow",
        "tqdm",
    ],
)
