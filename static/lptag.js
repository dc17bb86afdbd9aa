/* placeholder: the lpTag bus is written in issue 2 */ window.lpTag = window.lpTag || {};
