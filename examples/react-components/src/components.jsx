// A tiny component library: each component reports its adoption with one line.
import { useComponentTracking } from 'optel/react';

export function Button({ variant = 'primary', children, onClick }) {
  useComponentTracking('Button', { variant });
  return (
    <button type="button" className={`btn btn-${variant}`} onClick={onClick}>
      {children}
    </button>
  );
}

export function Card({ title, children }) {
  useComponentTracking('Card');
  return (
    <section className="card">
      <h2>{title}</h2>
      {children}
    </section>
  );
}

export function Alert({ severity = 'info', children }) {
  useComponentTracking('Alert', { severity });
  return (
    <p role="alert" className={`alert alert-${severity}`}>
      {children}
    </p>
  );
}
