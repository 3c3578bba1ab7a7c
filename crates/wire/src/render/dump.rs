//! Hex dumps with an optional marked offset.

use std::fmt::Write as _;

use super::FULL_DUMP_LIMIT;

/// Dump rows `first_row..last_row` (16 bytes each), marking `mark`.
pub(super) fn dump_rows(
    bytes: &[u8],
    mark: Option<usize>,
    first_row: usize,
    last_row: usize,
) -> String {
    let mut out = String::new();
    for row in first_row..last_row {
        let start = row * 16;
        if start > bytes.len() || (start == bytes.len() && start != 0) {
            break;
        }
        let chunk = &bytes[start..(start + 16).min(bytes.len())];
        let mut hex = String::with_capacity(50);
        for i in 0..16 {
            if i == 8 {
                hex.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(hex, "{b:02x} ");
                }
                None => hex.push_str("   "),
            }
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(out, "{start:04x}  {hex} |{ascii}|");
        if let Some(m) = mark {
            let at_end = m >= bytes.len() && (row + 1) * 16 >= bytes.len() && start <= m;
            if (start..start + 16).contains(&m) || at_end {
                let col = m.saturating_sub(start).min(16);
                let pad = 6 + 3 * col + usize::from(col >= 8);
                let what = if m >= bytes.len() {
                    format!("offset {m} (end of data)")
                } else {
                    format!("offset {m}")
                };
                let _ = writeln!(out, "{}^^ {what}", " ".repeat(pad));
            }
        }
    }
    out
}

/// Full dump for small messages, a window around `mark` for big ones.
pub(super) fn hex_dump_window(bytes: &[u8], mark: Option<usize>) -> String {
    let rows = bytes.len().div_ceil(16).max(1);
    if bytes.len() <= FULL_DUMP_LIMIT {
        return dump_rows(bytes, mark, 0, rows);
    }
    let centre = mark.unwrap_or(0).min(bytes.len()) / 16;
    let first = centre.saturating_sub(8);
    let last = (centre + 9).min(rows);
    let mut out = String::new();
    if first > 0 {
        let _ = writeln!(out, "… {} bytes before", first * 16);
    }
    out.push_str(&dump_rows(bytes, mark, first, last));
    if last < rows {
        let _ = writeln!(out, "… {} bytes after", bytes.len() - last * 16);
    }
    out
}
