import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { consentState, grantConsent, initBrowserTelemetry, pendingBatch, revokeConsent } from 'optel/react';
import { Alert, Button, Card } from './components.jsx';

// The collector and its browser key; the test passes them in the query string.
const params = new URLSearchParams(location.search);
initBrowserTelemetry({
  service: 'react-components',
  version: '0.1.0',
  endpoint: params.get('endpoint') ?? 'http://127.0.0.1:4318',
  key: params.get('key') ?? 'optel_bk_example',
});

function ConsentBanner() {
  const [state, setState] = useState(consentState());
  const [shown, setShown] = useState(null);
  if (state === 'denied') return <p id="consent-state">Usage statistics are off{navigator.globalPrivacyControl || navigator.doNotTrack === '1' ? ' (your browser asks not to be tracked)' : ''}.</p>;
  if (state === 'granted') return <p id="consent-state">Thank you: anonymous component counts of this page view are sent when you leave.</p>;
  return (
    <aside className="consent">
      <p>May we count which components this page uses? Anonymous, per page view, nothing stored in your browser.</p>
      <button type="button" onClick={() => { grantConsent(); setState('granted'); }}>Allow anonymous usage statistics</button>{' '}
      <button type="button" onClick={() => { revokeConsent(); setState('denied'); }}>No thanks</button>{' '}
      <button type="button" onClick={() => setShown(JSON.stringify(pendingBatch() ?? {}, null, 2))}>Show me the data</button>
      {shown && <pre id="shown-data">{shown}</pre>}
    </aside>
  );
}

function App() {
  return (
    <main>
      <h1>acme-ui</h1>
      <ConsentBanner />
      <Card title="Buttons">
        <Button>Save</Button> <Button>Publish</Button> <Button variant="secondary">Cancel</Button>
      </Card>
      <Alert severity="warning">This is an example page.</Alert>
      <p>
        <a id="leave" href="about:blank">Leave the page</a>
      </p>
    </main>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
