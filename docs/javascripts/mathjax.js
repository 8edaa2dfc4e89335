// MathJax settings for formulas written with pymdownx.arithmatex (generic mode): arithmatex
// wraps each formula in an element of class "arithmatex" with \( \) or \[ \] delimiters, and
// MathJax typesets those elements only. MathJax itself is served from assets/mathjax/ (see
// docs/hooks/mathjax.py), so nothing is fetched from another host.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
