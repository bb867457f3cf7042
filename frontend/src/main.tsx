import { render } from 'preact';
import { Root } from './App';
import './styles.css';

const root = document.getElementById('app');
if (root) render(<Root />, root);
