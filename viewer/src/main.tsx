import { createRoot } from 'react-dom/client';
import { App } from './app/app';
import './styles.css';

// No <StrictMode>: a double mount would create and destroy Cornerstone's rendering engine twice.
createRoot(document.getElementById('root')!).render(<App />);
