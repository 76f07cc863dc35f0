//! JSON text as the reference's FastAPI writes it: `json.dumps(..., ensure_ascii=False,
//! separators=(",", ":"))`, i.e. compact, UTF-8 unescaped, and floats as Python's `repr`.
//!
//! Scores are f32 in the index (faiss returns float32 too); the reference turns them into Python
//! floats (f64 of the same value) before writing, so `0.8f32` is written `0.800000011920929`.

/// Python's `repr(float(x))`: shortest round-trip digits, fixed notation for decimal exponents in
/// `-4..16` (with `.0` on integers), otherwise `d.ddde±XX` (at least two exponent digits).
/// Non-finite values give `NaN`, `inf`, `-inf` (not valid JSON; the writer emits `null` instead).
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16".
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

/// Appends a JSON string literal. serde_json escapes exactly what Python's `json.dumps` with
/// `ensure_ascii=False` escapes (`"`, `\`, control characters; `\b \f \n \r \t` short, others
/// `\u00xx` lowercase).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a str always serialises"));
}

/// Appends a score: the f32 widened to f64 and written as Python would; `null` when not finite.
pub(crate) fn push_score(out: &mut String, score: f32) {
    let x = f64::from(score);
    if x.is_finite() {
        out.push_str(&py_float_repr(x));
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are Python 3's `repr(float)` (hand-checked rules: fixed for 1e-4 <= |x| < 1e16).
    #[test]
    fn matches_python_repr() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.0, "-2.0"),
            (0.5, "0.5"),
            (123.0, "123.0"),
            (123.25, "123.25"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (-0.000015, "-1.5e-05"),
            (1e-100, "1e-100"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            // float(np.float32(x)) as the reference writes scores:
            (f64::from(0.8f32), "0.800000011920929"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (f64::from(-0.25f32), "-0.25"),
        ];
        for &(x, want) in cases {
            assert_eq!(py_float_repr(x), want, "repr({x:e})");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\te\u{1}f\u{7f}é…\u{2028}");
        // json.dumps('a"b\\c\nd\te\x01f\x7fé…\u2028', ensure_ascii=False)
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}é…\u{2028}\"");
    }

    #[test]
    fn non_finite_scores_are_null() {
        let mut s = String::new();
        push_score(&mut s, f32::NAN);
        push_score(&mut s, 0.5);
        assert_eq!(s, "null0.5");
    }
}
