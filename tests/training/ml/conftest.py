"""Tiny backbones built in code, once per module (no download, no Django)."""

import pytest

from training.ml import backbones


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return backbones.tiny_bert_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return backbones.tiny_llama_dir(tmp_path_factory.mktemp("tiny"))
