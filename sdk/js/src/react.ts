/**
 * `optel/react`: which React components get adopted. `useComponentTracking('Button', { variant })`
 * counts the first mount of each component (per attribute set) in a page view; the page view's
 * batch is sent on `pagehide`, only after the application called `grantConsent()`, and never
 * under Global Privacy Control or Do Not Track. See `optel/browser` for the details.
 */
import { useEffect } from 'react';
import { type ComponentAttributes, trackComponent } from './browser.js';

export { initBrowserTelemetry, grantConsent, revokeConsent, consentState, browserOptedOut, pendingBatch, flushPageView, trackComponent } from './browser.js';
export type { BrowserOptions, ComponentAttributes } from './browser.js';

/** Counts the first mount of component `name` in this page view (attributes: enum-like strings, numbers, booleans). */
export function useComponentTracking(name: string, attributes?: ComponentAttributes): void {
  // Attributes are read at the first mount only: later renders are not counted.
  useEffect(() => {
    trackComponent(name, attributes);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
}
