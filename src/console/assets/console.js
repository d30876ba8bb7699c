/* global document, window */
// flowthru console: the little the pages need beyond HTML (the CSP allows no inline script).
document.addEventListener('DOMContentLoaded', () => {
  for (const select of document.querySelectorAll('select[data-autosubmit]')) {
    select.addEventListener('change', () => select.form.submit());
  }
  // A chosen file fills the textarea it names: the YAML goes up as form text, no multipart needed.
  for (const input of document.querySelectorAll('input[type=file][data-fills]')) {
    input.addEventListener('change', async () => {
      const file = input.files && input.files[0];
      if (file) document.getElementById(input.dataset.fills).value = await file.text();
    });
  }
  for (const bar of document.querySelectorAll('[data-width]')) {
    bar.style.width = `${bar.dataset.width}%`;
  }
  const data = document.getElementById('placement-data');
  const canvas = document.getElementById('placement-chart');
  if (data && canvas && window.Chart) {
    const { sites, placement } = JSON.parse(data.textContent);
    const colours = {
      provisioned: '#2e7d32', provisioning: '#66bb6a', moved: '#9ccc65', imported: '#90a4ae', unplaced: '#ffb300',
      unmatched: '#fb8c00', blocked: '#e53935', failed: '#8e24aa', deleted: '#bdbdbd',
    };
    const statuses = [...new Set(placement.map((p) => p.status))];
    const shown = sites.filter((site) => placement.some((p) => p.site === site));
    new window.Chart(canvas, {
      type: 'bar',
      data: {
        labels: shown.map((s) => s ?? '(customer level)'),
        datasets: statuses.map((status) => ({
          label: status,
          backgroundColor: colours[status] ?? '#607d8b',
          data: shown.map((site) => placement.find((p) => p.site === site && p.status === status)?.users ?? 0),
        })),
      },
      options: { animation: false, responsive: true, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } }, plugins: { legend: { position: 'bottom' } } },
    });
  }
});
