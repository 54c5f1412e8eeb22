"""Tests that need data from outside the repository skip on a developer's machine and fail in CI."""
from __future__ import annotations

import pytest

from tests.cifar_sample import needs_shared_cifar10


def reads_the_archive(tmp_path, shape):
    return shape


@pytest.fixture
def clean_environment(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("FEATUREBENCH_REQUIRE_SHARED_DATA", raising=False)
    return monkeypatch


def test_a_missing_archive_skips_the_test_on_a_developers_machine(clean_environment, tmp_path):
    test = needs_shared_cifar10(archive=tmp_path / "absent.tar.gz")(reads_the_archive)
    with pytest.raises(pytest.skip.Exception, match="absent.tar.gz is missing"):
        test(tmp_path, (32, 32))


@pytest.mark.parametrize("variable,value", [("CI", "true"), ("FEATUREBENCH_REQUIRE_SHARED_DATA", "1")])
def test_a_missing_archive_fails_the_test_in_ci(clean_environment, tmp_path, variable, value):
    clean_environment.setenv(variable, value)
    test = needs_shared_cifar10(archive=tmp_path / "absent.tar.gz")(reads_the_archive)
    with pytest.raises(pytest.fail.Exception, match="absent.tar.gz is missing; put cifar10-jpeg.tar.gz there"):
        test(tmp_path, (32, 32))


def test_a_present_archive_runs_the_test_with_its_arguments(clean_environment, tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    archive.write_bytes(b"")
    clean_environment.setenv("CI", "true")
    test = needs_shared_cifar10(archive=archive)(reads_the_archive)
    assert test(tmp_path, (32, 32)) == (32, 32)
    assert "shape" in __import__("inspect").signature(test).parameters  # pytest still sees the fixtures it asks for
