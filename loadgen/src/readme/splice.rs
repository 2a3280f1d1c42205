//! Putting the generated block between README's markers, leaving every other line as it was.

/// The first line of the generated block...
pub const BEGIN: &str = "<!-- perf:begin -->";
/// ...and its last.
pub const END: &str = "<!-- perf:end -->";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpliceError {
    #[error("no `{BEGIN}` ... `{END}` block in the README: put the two markers, each on its own line, where the figures go")]
    NoMarkers,
    #[error(
        "the README has more than one `{BEGIN}` or `{END}`, or `{END}` comes first: keep one pair"
    )]
    Misplaced,
}

/// `readme` with the text from its begin marker to its end marker (both included) replaced by
/// `block` (which carries the markers).
pub fn splice(readme: &str, block: &str) -> Result<String, SpliceError> {
    let (begins, ends) = (readme.matches(BEGIN).count(), readme.matches(END).count());
    if begins == 0 || ends == 0 {
        return Err(SpliceError::NoMarkers);
    }
    let (start, end) = match (readme.find(BEGIN), readme.find(END)) {
        (Some(s), Some(e)) if begins == 1 && ends == 1 && s < e => (s, e + END.len()),
        _ => return Err(SpliceError::Misplaced),
    };
    // The block ends with a newline; so does the line the end marker was on.
    let rest = readme[end..].strip_prefix('\n').unwrap_or(&readme[end..]);
    Ok(format!("{}{block}{rest}", &readme[..start]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_between_the_markers() {
        let block = format!("{BEGIN}\nnew\n{END}\n");
        let readme = format!("# Title\n\nprose\n{BEGIN}\nold\nfigures\n{END}\nafter\n");
        let out = splice(&readme, &block).unwrap();
        assert_eq!(
            out,
            format!("# Title\n\nprose\n{BEGIN}\nnew\n{END}\nafter\n")
        );
        // Again: nothing changes.
        assert_eq!(splice(&out, &block).unwrap(), out);
        // At the very end of the file.
        let readme = format!("x\n{BEGIN}\n{END}");
        assert_eq!(splice(&readme, &block).unwrap(), format!("x\n{block}"));
    }

    #[test]
    fn refuses_without_one_ordered_pair() {
        let block = format!("{BEGIN}\n{END}\n");
        assert_eq!(splice("no markers", &block), Err(SpliceError::NoMarkers));
        assert_eq!(splice(BEGIN, &block), Err(SpliceError::NoMarkers));
        assert_eq!(
            splice(&format!("{END}\n{BEGIN}\n"), &block),
            Err(SpliceError::Misplaced)
        );
        assert_eq!(
            splice(&format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"), &block),
            Err(SpliceError::Misplaced)
        );
    }
}
