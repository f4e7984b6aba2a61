// materia-web: draws the charts of a page from the JSON blocks beside them (ECharts), follows
// the colour scheme, and makes the pickers navigate on change. The page works without it.
(function () {
  'use strict';

  var scheme = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  var charts = [];

  function dark() {
    return !!(scheme && scheme.matches);
  }

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    return String(Math.round(v * 100) / 100);
  }

  function option(spec) {
    var percent = spec.percent;
    var format = function (v) {
      if (v === null || v === undefined || isNaN(v)) return '–';
      return percent ? (v * 100).toFixed(1) + '%' : Number(v).toLocaleString('en-US');
    };
    return {
      backgroundColor: 'transparent',
      animation: false,
      grid: { left: 8, right: 16, top: spec.series.length > 1 ? 56 : 24, bottom: 8, containLabel: true },
      legend: spec.series.length > 1 ? { top: 0, type: 'scroll' } : undefined,
      tooltip: { trigger: 'axis', valueFormatter: format },
      xAxis: { type: 'category', data: spec.labels || spec.years.map(String), boundaryGap: false },
      yAxis: {
        type: 'value',
        scale: !percent,
        axisLabel: {
          formatter: function (v) { return percent ? (v * 100).toFixed(0) + '%' : compact(v); }
        }
      },
      series: spec.series.map(function (s, i) {
        var line = { name: s.name, type: 'line', data: s.values, showSymbol: false, connectNulls: false };
        // Coverage breaks: a dashed vertical line on the first series, its reason on hover.
        if (i === 0 && spec.marks && spec.marks.length) {
          line.markLine = {
            symbol: 'none',
            silent: false,
            lineStyle: { type: 'dashed' },
            label: { show: false },
            tooltip: { formatter: function (p) { return p.data.text; } },
            data: spec.marks.map(function (m) { return { xAxis: m.label, text: m.text }; })
          };
        }
        return line;
      })
    };
  }

  // Price against stocks-to-use: one point per marketing year and series, the latest marked.
  function scatter(spec) {
    return {
      backgroundColor: 'transparent',
      animation: false,
      grid: { left: 8, right: 16, top: 40, bottom: 24, containLabel: true },
      legend: { top: 0 },
      tooltip: {
        trigger: 'item',
        formatter: function (p) {
          return p.seriesName + ' ' + p.data[2] + ': ' + (p.data[0] * 100).toFixed(1) + '% stocks-to-use, ' +
            Number(p.data[1]).toFixed(1);
        }
      },
      xAxis: { type: 'value', scale: true, name: spec.x_name, nameLocation: 'middle', nameGap: 24,
               axisLabel: { formatter: function (v) { return (v * 100).toFixed(0) + '%'; } } },
      yAxis: { type: 'value', scale: true, name: spec.y_name },
      series: spec.series.map(function (s) {
        return {
          name: s[0], type: 'scatter', data: s[1],
          symbolSize: function (d) { return d[2] === spec.latest ? 16 : 8; },
          label: { show: true, formatter: function (p) { return p.data[2] === spec.latest ? p.data[2] : ''; },
                   position: 'top' }
        };
      })
    };
  }

  function draw() {
    charts.forEach(function (c) { c.dispose(); });
    charts = [];
    if (typeof window.echarts === 'undefined') return;
    var boxes = document.querySelectorAll('[data-chart]');
    Array.prototype.forEach.call(boxes, function (box) {
      var source = document.getElementById(box.getAttribute('data-chart'));
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var chart = window.echarts.init(box, dark() ? 'dark' : null, { renderer: 'canvas' });
      chart.setOption(spec.kind === 'scatter' ? scatter(spec) : option(spec));
      charts.push(chart);
    });
    document.documentElement.setAttribute('data-charts', String(charts.length));
  }

  function pickers() {
    var selects = document.querySelectorAll('select[data-navigate]');
    Array.prototype.forEach.call(selects, function (select) {
      select.addEventListener('change', function () {
        if (select.value) {
          window.location.assign(select.getAttribute('data-navigate') + encodeURIComponent(select.value));
        }
      });
    });
  }

  function start() {
    draw();
    pickers();
    if (scheme) {
      if (scheme.addEventListener) scheme.addEventListener('change', draw);
      else if (scheme.addListener) scheme.addListener(draw);
    }
    var pending = null;
    window.addEventListener('resize', function () {
      if (pending) window.clearTimeout(pending);
      pending = window.setTimeout(function () {
        charts.forEach(function (c) { c.resize(); });
      }, 100);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
