#!/usr/bin/env python3
"""Writes tokenizer_corpus.txt: the texts tools/compare_tokenizer.py encodes with our tokenizers and
Hugging Face's. Seeded, so running it again writes the same file. One text per line, escaped as
`tools/tokenize --escaped` reads them (\\n, \\t, \\r, \\\\).

    python3 tests/data/make_tokenizer_corpus.py > tests/data/tokenizer_corpus.txt
"""
import random

SEED = 18
COUNT = 1200

WORDS = ("the quick brown fox jumps over lazy dog tokenizer model tensor shard rank mesh layer "
         "attention rotary embedding Hello World Python Llama SmolLM GGUF naïve café résumé").split()
CONTRACTIONS = ["we're", "I'll", "don't", "it's", "they've", "I'd", "I'm", "you'd", "she'll", "WE'RE",
                "It'S", "can't", "won't", "y'all", "'tis", "rock 'n' roll", "o'clock", "l'été"]
ACCENTED = ["Äpfel", "Straße", "façade", "crème brûlée", "Ångström", "jalapeño", "Tiếng Việt có dấu",
            "Łódź", "Ærøskøbing", "e\u0301le\u0300ve", "n\u0303", "Zürich", "São Paulo", "İstanbul", "ﬁne"]
EMOJI = ["🦙", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏻‍💻", "🇫🇷🇯🇵", "❤️", "🧑‍🤝‍🧑", "🐈‍⬛", "✊🏿",
         "1️⃣", "🫠", "😶‍🌫️", "©️", "⚡", "🤖💬"]
SCRIPTS = ["你好，世界！", "机器学习模型", "東京は日本の首都です。", "ひらがなとカタカナ", "한국어 텍스트입니다",
           "مرحبا بالعالم", "اللغة العربية ١٢٣٤", "שלום עולם", "עברית עם ניקוד: שָׁלוֹם", "नमस्ते दुनिया",
           "हिन्दी में १२३", "Привет, мир!", "Ελληνικά κείμενα", "สวัสดีชาวโลก", "ქართული", "Հայերեն",
           "ᚠᛇᚻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "፩፪፫ ኢትዮጵያ"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009", "\u200b",
          " \t \n", "\n\n\n\n", "        "]
DIGITS = ["0", "7", "42", "123", "2024", "12345", "3.14159", "1,000,000", "007", "+1 (555) 010-9999",
          "v2.0.1", "x86_64", "1e-4", "0xDEADBEEF", "½", "²³", "٣٤٥", "१२३", "１２３", "Ⅻ", "10000000000000000"]
CODE = ["def f(x):\n    return x ** 2", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "{\"key\": [1, 2, 3], \"ok\": true}", "<div class=\"x\">&amp;</div>", "$ ls -la | grep '.gguf'",
        "std::vector<int64_t> ids{1, 2};", "if x != None and y >= 0:\n\tpass", "SELECT * FROM t WHERE id=3;",
        "#include <cstdio>", "a_b-c.d/e\\f", "regex: ^\\s+(?!\\S)$", "lambda: {k: v for k, v in d.items()}",
        "    indented\n        more", "// comment\n/* block */", "x=[i*i for i in range(10)]"]
PUNCT = ["...", "!!!", "???", "—", "–", "“quoted”", "«guillemets»", "‘single’", "(parens)", "[brackets]",
         "@user #tag", "50%", "$5.99", "€10", "a&b", "~/path", "::", "-->", "«»", "¿Qué?", "¡Hola!", "•"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
            "<|eot_id|>", "<|im_start", "im_end|>", "<s", "< s >", "<|im_start|>user\nHi<|im_end|>\n"]
FRAGMENTS = [WORDS, CONTRACTIONS, ACCENTED, EMOJI, SCRIPTS, SPACES, DIGITS, CODE, PUNCT, SPECIALS]

# Code points from many blocks, assigned in Unicode 14 (the tables of PCRE2 10.42 and of Rust agree on them).
RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
          (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2070, 0x209C),
          (0x20A0, 0x20C0), (0x2100, 0x214F), (0x2190, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F),
          (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF01, 0xFF5E), (0x1F300, 0x1F5FF),
          (0x1F600, 0x1F64F), (0x1D400, 0x1D4FF)]


def random_chars(rng):
    out = []
    for _ in range(rng.randint(1, 12)):
        lo, hi = rng.choice(RANGES)
        c = chr(rng.randint(lo, hi))
        if c.isprintable() or c in "\t\n ":
            out.append(c)
    return "".join(out)


def sentence(rng):
    parts = []
    for _ in range(rng.randint(1, 10)):
        r = rng.random()
        if r < 0.08:
            parts.append(random_chars(rng))
        else:
            parts.append(rng.choice(rng.choice(FRAGMENTS)))
        parts.append(rng.choice([" ", " ", " ", "", ", ", ". ", "\n", "  ", "\t"]))
    return "".join(parts)


def fixed_texts():
    texts = ["", " ", "  ", "\n", "\t", "a", "A", " a", "a ", "Hello world", " Hello world", "Hello World!",
             "Hello, world!", " this is 🦙.cpp", "w048 7tuijk dsdfhu", "  leading and trailing  "]
    for group in FRAGMENTS:
        texts.extend(group)
    texts += [w + " " + c for w in WORDS[:6] for c in CONTRACTIONS[:6]]
    texts += [" " * n + "x" for n in range(1, 9)] + ["x" + "\n" * n + "y" for n in range(1, 5)]
    texts += ["9" * n for n in range(1, 16)] + ["a" + "1" * n + "b" for n in range(1, 8)]
    return texts


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def main():
    rng = random.Random(SEED)
    texts = fixed_texts()
    while len(texts) < COUNT:
        texts.append(sentence(rng))
    for text in texts:
        print(escape(text))


if __name__ == "__main__":
    main()
