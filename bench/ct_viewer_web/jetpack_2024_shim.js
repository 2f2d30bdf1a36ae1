// Stands in for the d3-jetpack build of 2024-07-20 that circuit-tracer 0.5.0's viewer loads from a
// CDN, on top of npm's d3-jetpack 2.3.0 (bench/ct_viewer.py): the one thing the page uses that
// 2.3.0 lacks is conventions' c.drawAxis(sel), which draws c.xAxis and c.yAxis into sel.
(function () {
  var conventions = d3.conventions
  d3.conventions = function (opts) {
    var c = conventions(opts)
    c.drawAxis = function (sel) { return d3.drawAxis(Object.assign({}, c, {svg: sel || c.svg})) }
    return c
  }
})()
