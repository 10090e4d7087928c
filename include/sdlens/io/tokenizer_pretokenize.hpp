#pragma once
// The pre-tokenizer split of byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2), written out by
// hand over code points instead of with a regex engine (std::regex does not know UTF-8 or
// Unicode classes). The patterns are
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2:   as Llama-3 with \p{N} one digit at a time.
// Approximation: Unicode classes come from a short table, not the Unicode database. ASCII is
// exact; outside it, listed ranges of digits, spaces, punctuation and symbols (Latin-1, general
// punctuation, currency, arrows/math/box drawing, CJK punctuation, full-width punctuation,
// emoji) are classed as such, combining marks as "other", and every other code point as a
// letter. Text in scripts whose digits or punctuation are not listed can split differently
// from Hugging Face's tokenizers.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sdlens {

enum class pretokenizer_kind { gpt2, llama3, qwen2 };

namespace detail {

enum class char_class { letter, number, space, other };

inline char_class classify(std::uint32_t c)
{
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return char_class::letter;
        if (c >= '0' && c <= '9') return char_class::number;
        if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return char_class::space;
        return char_class::other;
    }
    auto in = [c](std::uint32_t a, std::uint32_t b) { return c >= a && c <= b; };
    if (c == 0x85 || c == 0xA0 || c == 0x1680 || in(0x2000, 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
        c == 0x205F || c == 0x3000)
        return char_class::space;
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || in(0xBC, 0xBE) || in(0x0660, 0x0669) || in(0x06F0, 0x06F9) ||
        in(0x0966, 0x096F) || in(0x2070, 0x2079) || in(0x2080, 0x2089) || in(0x2150, 0x2189) || in(0x2460, 0x249B) ||
        in(0xFF10, 0xFF19))
        return char_class::number;
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return char_class::letter;
    if (in(0x80, 0xBF) || c == 0xD7 || c == 0xF7 || in(0x0300, 0x036F) || in(0x2010, 0x2027) || in(0x2030, 0x205E) ||
        in(0x20A0, 0x20FF) || in(0x2190, 0x2BFF) || in(0x3001, 0x303F) || in(0xFF01, 0xFF0F) || in(0xFF1A, 0xFF20) ||
        in(0xFF3B, 0xFF40) || in(0xFF5B, 0xFF65) || in(0xE000, 0xF8FF) || in(0xFE00, 0xFE0F) || in(0x1F000, 0x1FAFF))
        return char_class::other;
    return char_class::letter;
}

// Decodes UTF-8 leniently: a byte that does not start a valid sequence is its own code point
// (classed as "other"), so every input byte ends up in exactly one piece.
struct code_point {
    std::uint32_t cp;
    std::size_t begin, end;  // byte range in the text
};

inline std::vector<code_point> decode_utf8(std::string_view s)
{
    std::vector<code_point> out;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
        bool ok = len > 0 && i + static_cast<std::size_t>(len) <= s.size();
        for (int k = 1; ok && k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) ok = false;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if (!ok) {
            len = 1;
            cp = 0xFFFFFFFFu;  // invalid: "other"
        }
        out.push_back({cp == 0xFFFFFFFFu ? 0x80u : cp, i, i + static_cast<std::size_t>(len)});
        i += static_cast<std::size_t>(len);
    }
    return out;
}

}  // namespace detail

// Splits text into the pieces the pattern would match, in order; the pieces concatenate to text.
inline std::vector<std::string_view> pretokenize(std::string_view text, pretokenizer_kind kind)
{
    using detail::char_class;
    const auto cps = detail::decode_utf8(text);
    const std::size_t n = cps.size();
    auto cls = [&](std::size_t i) { return detail::classify(cps[i].cp); };
    auto is_nl = [&](std::size_t i) { return cps[i].cp == '\r' || cps[i].cp == '\n'; };
    auto lower = [&](std::size_t i) {
        const auto c = cps[i].cp;
        return (kind != pretokenizer_kind::gpt2 && c >= 'A' && c <= 'Z') ? c + 32 : c;
    };
    std::vector<std::string_view> out;
    auto emit = [&](std::size_t a, std::size_t b) { out.push_back(text.substr(cps[a].begin, cps[b - 1].end - cps[a].begin)); };
    auto run = [&](std::size_t j, char_class k) {
        while (j < n && cls(j) == k) ++j;
        return j;
    };

    std::size_t i = 0;
    while (i < n) {
        // Contractions.
        if (cps[i].cp == '\'' && i + 1 < n) {
            const auto a = lower(i + 1), b = i + 2 < n ? lower(i + 2) : 0;
            std::size_t len = 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') len = 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) len = 3;
            if (len) {
                emit(i, i + len);
                i += len;
                continue;
            }
        }
        const char_class c0 = cls(i);
        if (kind == pretokenizer_kind::gpt2) {
            // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
            const std::size_t s = (cps[i].cp == ' ' && i + 1 < n && cls(i + 1) != char_class::space) ? i + 1 : i;
            const char_class k = cls(s);
            if (k != char_class::space) {
                const std::size_t e = run(s, k);
                emit(i, e);
                i = e;
                continue;
            }
        } else {
            // '[^\r\n\p{L}\p{N}]?\p{L}+'
            if (c0 == char_class::letter) {
                const std::size_t e = run(i, char_class::letter);
                emit(i, e);
                i = e;
                continue;
            }
            if (c0 != char_class::number && !is_nl(i) && i + 1 < n && cls(i + 1) == char_class::letter) {
                const std::size_t e = run(i + 1, char_class::letter);
                emit(i, e);
                i = e;
                continue;
            }
            // '\p{N}{1,3}' (Qwen2: one digit)
            if (c0 == char_class::number) {
                const std::size_t max = kind == pretokenizer_kind::llama3 ? 3 : 1;
                std::size_t e = i;
                while (e < n && e - i < max && cls(e) == char_class::number) ++e;
                emit(i, e);
                i = e;
                continue;
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            const std::size_t s = (cps[i].cp == ' ' && i + 1 < n && cls(i + 1) == char_class::other) ? i + 1 : i;
            if (cls(s) == char_class::other) {
                std::size_t e = run(s, char_class::other);
                while (e < n && is_nl(e)) ++e;
                emit(i, e);
                i = e;
                continue;
            }
            // '\s*[\r\n]+': the longest whitespace prefix that ends in a newline.
            const std::size_t ws_end = run(i, char_class::space);
            std::size_t last_nl = n;
            for (std::size_t j = i; j < ws_end; ++j)
                if (is_nl(j)) last_nl = j;
            if (last_nl != n) {
                emit(i, last_nl + 1);
                i = last_nl + 1;
                continue;
            }
        }
        // '\s+(?!\S)|\s+': a whitespace run gives its last space to the word after it.
        const std::size_t e = run(i, char_class::space);
        if (e == n || e - i == 1) {
            emit(i, e);
            i = e;
        } else {
            emit(i, e - 1);
            i = e - 1;
        }
    }
    return out;
}

}  // namespace sdlens
