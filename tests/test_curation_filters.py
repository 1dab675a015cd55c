"""Telecom lexicon, relevance filter and the offline tokenizer the Gopher filters use."""

from __future__ import annotations

from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

from megatron_telecom.data.curation.lexicon import (
    DEFAULT_LEXICON_PATH,
    keyword_hits,
    load_lexicon,
    parse_lexicon,
    relevance_score,
    split_words,
)
from megatron_telecom.data.curation.steps import TelecomRelevanceFilter
from megatron_telecom.data.curation.text import OfflineWordTokenizer

TELECOM = (
    "During handover the source gNB sends the UE context to the target gNB over the Xn "
    "interface, while the AMF keeps the NAS signalling connection and the UPF switches the "
    "user plane path of the PDU session. "
) * 5
GENERAL = (
    "The museum opened a new exhibition of Renaissance paintings. Visitors can walk through "
    "six rooms of portraits and landscapes, and a guided tour starts every hour. "
) * 5


def test_lexicon_size_and_categories() -> None:
    lexicon = load_lexicon()
    assert len(lexicon) >= 500
    assert set(lexicon.categories) == {"ran", "core", "transport", "protocols", "standards"}
    assert all(count >= 50 for count in lexicon.categories.values())
    assert DEFAULT_LEXICON_PATH.name == "telecom_keywords.txt" and DEFAULT_LEXICON_PATH.is_file()


def test_matching_rules() -> None:
    lexicon = load_lexicon()
    hits = keyword_hits(split_words("The AMF and amf; Handover via the core network over S1-MME."),
                        lexicon)
    assert hits == {"AMF": 3.0, "Handover": 3.0, "core network": 3.0, "S1-MME": 3.0}


def test_parse_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "lex.txt"
    bad.write_text("[ran]\n3 gNB\nheavy UE\n")
    with pytest.raises(ValueError, match=r"lex.txt:3: expected 'WEIGHT TERM'"):
        parse_lexicon(bad)
    bad.write_text("[ran]\n3 gNB\n2 gNB\n")
    with pytest.raises(ValueError, match="duplicate term 'gNB'"):
        parse_lexicon(bad)


def test_relevance_filter_scores_and_drops_with_reason() -> None:
    assert relevance_score(TELECOM, load_lexicon()) > 100
    assert relevance_score(GENERAL, load_lexicon()) < 10
    step = TelecomRelevanceFilter(threshold=40)
    kept, dropped = Document(text=TELECOM, id="t"), Document(text=GENERAL, id="g")
    assert list(step.run([kept, dropped])) == [kept]
    assert kept.metadata["telecom_score"] > 100
    assert step.stats["dropped_telecom_low_relevance"].total == 1


def test_gopher_filters_run_on_the_offline_tokenizer() -> None:
    tokenizer = OfflineWordTokenizer()
    assert tokenizer.word_tokenize("The gNB's S1-MME link, 802.11ax!") == [
        "The", "gNB's", "S1-MME", "link", "802.11ax",
    ]
    assert tokenizer.sent_tokenize("One sentence. Two here!\n\nThird") == [
        "One sentence.", "Two here!", "Third",
    ]
    doc = Document(text=TELECOM, id="t")
    assert GopherQualityFilter(language=tokenizer).filter(doc) is True
    spam = Document(text="buy now " * 300, id="s")
    assert GopherRepetitionFilter(language=tokenizer).filter(spam)[0] is False
