"""The name runs are grouped under (MLflow experiment featurebench/<label>): data.label, else a name that says something."""
import pytest

from pipeline.datasets.load import dataset_label
from pipeline.params import DataParams


@pytest.mark.parametrize(
    "path,label",
    [
        ("/photos/sign-digits/Dataset", "sign-digits-dataset"),  # the folder a download unpacks to
        ("sign-digits/Dataset/", "sign-digits-dataset"),
        ("/data/flowers.tar.gz", "flowers"),
        ("~/downloads/cats-vs-dogs.ZIP", "cats-vs-dogs"),
        ("archive/2024/train.zip", "2024-train"),
        ("/srv/data/images", "srv-data-images"),  # generic all the way up: every folder joins
        ("Dataset", "Dataset"),  # nothing above it in the path to add
    ],
)
def test_an_image_folder_is_named_after_its_folder_and_a_generic_name_after_its_parent_too(path, label):
    assert dataset_label(DataParams(name="imagefolder", path=path)) == label


def test_data_label_wins_for_every_source():
    assert dataset_label(DataParams(name="imagefolder", path="/x/Dataset", label="sign digits")) == "sign digits"
    assert dataset_label(DataParams(name="cifar10", label="cifar-small")) == "cifar-small"


def test_built_in_sources_are_named_after_themselves():
    assert dataset_label(DataParams(name="shapes")) == "shapes"
    assert dataset_label(DataParams(name="cifar10", path="/tmp/cifar-10-python.tar.gz")) == "cifar10"
